//! The gateway's one error type: every error, from an upstream gRPC status or from the gateway
//! itself, is an HTTP status with `{"error": {"code": "NOT_FOUND", "message": "…", "details": …}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use outpost_kit::rpc::{BadRequest, ErrorInfo, PreconditionFailure, ResourceInfo, RetryInfo, RpcStatus};
use prost::Message;
use serde_json::{Value, json};

/// An error answered as JSON.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The gRPC-style code name, such as `NOT_FOUND`.
    pub code: &'static str,
    /// A lowercase message for people.
    pub message: String,
    /// Structured details (the decoded `google.rpc.Status` details), when there are any.
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with a status, code and message (quoted input in it is cut to 64 characters).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: outpost_kit::error::bounded(&message.into()),
            details: None,
        }
    }

    /// The same error with details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 `INVALID_ARGUMENT`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    /// 400 `INVALID_ARGUMENT` naming the field, with a `google.rpc.BadRequest`-shaped detail.
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        let reason = outpost_kit::error::bounded(&reason.into());
        let field = outpost_kit::error::bounded(field);
        Self::bad_request(format!("{field}: {reason}")).with_details(json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": reason}],
        }]))
    }

    /// 401 `UNAUTHENTICATED` (answered with `WWW-Authenticate: Bearer`).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 405 `METHOD_NOT_ALLOWED` (gateway only; there is no gRPC code for it).
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", message)
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// 500 `INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }

    /// 503 `UNAVAILABLE`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The message of an error answer, for the one log line the request gets.
#[derive(Clone, Debug)]
pub struct ErrorMessage(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        response.extensions_mut().insert(ErrorMessage(self.message.clone()));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The HTTP status and code name of a gRPC code (google's `google.rpc.Code` mapping).
pub fn http_status(code: tonic::Code) -> (StatusCode, &'static str) {
    use tonic::Code;
    match code {
        Code::Ok => (StatusCode::OK, "OK"),
        Code::Cancelled => (StatusCode::from_u16(499).expect("valid status"), "CANCELLED"),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
        Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        Code::FailedPrecondition => (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION"),
        Code::Aborted => (StatusCode::CONFLICT, "ABORTED"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "OUT_OF_RANGE"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "DATA_LOSS"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let (http, code) = http_status(status.code());
        Self {
            status: http,
            code,
            message: outpost_kit::error::bounded(status.message()),
            details: rpc_details(status.details()),
        }
    }
}

/// The details of an encoded `google.rpc.Status` (`grpc-status-details-bin`) as JSON, `None`
/// when there are none. Common `google.rpc` detail types are decoded; others keep their type.
pub fn rpc_details(encoded: &[u8]) -> Option<Value> {
    if encoded.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(encoded).ok()?;
    if status.details.is_empty() {
        return None;
    }
    Some(Value::Array(status.details.iter().map(any_to_json).collect()))
}

fn any_to_json(any: &prost_types::Any) -> Value {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let body = match name {
        "google.rpc.ErrorInfo" => ErrorInfo::decode(any.value.as_slice())
            .ok()
            .map(|d| json!({"reason": d.reason, "domain": d.domain, "metadata": d.metadata})),
        "google.rpc.BadRequest" => BadRequest::decode(any.value.as_slice()).ok().map(|d| {
            let violations: Vec<Value> = d
                .field_violations
                .iter()
                .map(|v| json!({"field": v.field, "description": v.description}))
                .collect();
            json!({ "fieldViolations": violations })
        }),
        "google.rpc.PreconditionFailure" => PreconditionFailure::decode(any.value.as_slice()).ok().map(|d| {
            let violations: Vec<Value> = d
                .violations
                .iter()
                .map(|v| json!({"type": v.r#type, "subject": v.subject, "description": v.description}))
                .collect();
            json!({ "violations": violations })
        }),
        "google.rpc.ResourceInfo" => ResourceInfo::decode(any.value.as_slice()).ok().map(|d| {
            json!({
                "resourceType": d.resource_type,
                "resourceName": d.resource_name,
                "owner": d.owner,
                "description": d.description,
            })
        }),
        "google.rpc.RetryInfo" => RetryInfo::decode(any.value.as_slice()).ok().map(|d| {
            let delay = d
                .retry_delay
                .map(|d| format!("{}s", d.seconds as f64 + f64::from(d.nanos) / 1e9));
            json!({ "retryDelay": delay })
        }),
        _ => None,
    };
    let mut out = match body {
        Some(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    out.insert("@type".into(), Value::String(any.type_url.clone()));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_kit::rpc::FieldViolation;

    #[test]
    fn maps_grpc_codes_to_http() {
        let cases = [
            (tonic::Code::Ok, 200),
            (tonic::Code::InvalidArgument, 400),
            (tonic::Code::FailedPrecondition, 400),
            (tonic::Code::OutOfRange, 400),
            (tonic::Code::Unauthenticated, 401),
            (tonic::Code::PermissionDenied, 403),
            (tonic::Code::NotFound, 404),
            (tonic::Code::AlreadyExists, 409),
            (tonic::Code::Aborted, 409),
            (tonic::Code::ResourceExhausted, 429),
            (tonic::Code::Cancelled, 499),
            (tonic::Code::Unimplemented, 501),
            (tonic::Code::Unavailable, 503),
            (tonic::Code::DeadlineExceeded, 504),
            (tonic::Code::Internal, 500),
            (tonic::Code::Unknown, 500),
            (tonic::Code::DataLoss, 500),
        ];
        for (code, http) in cases {
            assert_eq!(http_status(code).0.as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn decodes_status_details() {
        let bad = BadRequest {
            field_violations: vec![FieldViolation {
                field: "page_size".into(),
                description: "too big".into(),
            }],
        };
        let status = RpcStatus {
            code: 3,
            message: "bad".into(),
            details: vec![
                prost_types::Any {
                    type_url: "type.googleapis.com/google.rpc.BadRequest".into(),
                    value: bad.encode_to_vec(),
                },
                prost_types::Any {
                    type_url: "type.googleapis.com/x.Y".into(),
                    value: vec![1, 2],
                },
            ],
        };
        let err = ApiError::from(tonic::Status::with_details(
            tonic::Code::InvalidArgument,
            "bad",
            status.encode_to_vec().into(),
        ));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        let details = err.details.unwrap();
        assert_eq!(details[0]["fieldViolations"][0]["field"], "page_size");
        assert_eq!(details[1]["@type"], "type.googleapis.com/x.Y");
        assert_eq!(ApiError::from(tonic::Status::not_found("x")).details, None);
    }

    #[test]
    fn body_shape() {
        let body = ApiError::not_found("plotJobs/x not found").body();
        assert_eq!(
            body,
            json!({"error": {"code": "NOT_FOUND", "message": "plotJobs/x not found", "details": null}})
        );
    }
}
