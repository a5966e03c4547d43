//! One small error type for domain code, mapped to a gRPC status in one place. Messages are
//! lowercase; invalid input names the field.

/// What went wrong in a domain call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: which field, and why.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: String,
        /// Why it is wrong.
        reason: String,
    },
    /// The resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The resource is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A bound was reached (queue full, too much in flight): try again later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency did not answer.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Domain results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Bad input in `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Error::Unavailable(format!("the SQL database is unavailable: {err}"))
            }
            other => Error::Internal(other.into()),
        }
    }
}

/// Most characters of user input an error message echoes, per quoted value.
pub const MAX_ECHO: usize = 64;
/// Most characters of an error message.
const MAX_MESSAGE: usize = 1024;

/// `message` with every quoted value (`"…"`, as `{:?}` writes user input) cut to [`MAX_ECHO`]
/// characters and the whole to 1024, so an error never echoes a large input back.
pub fn bounded(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE + 8));
    let mut quoted: Option<usize> = None;
    let mut escaped = false;
    for c in message.chars() {
        if out.chars().count() >= MAX_MESSAGE {
            out.push('…');
            break;
        }
        match quoted {
            None => {
                out.push(c);
                if c == '"' {
                    quoted = Some(0);
                }
            }
            Some(n) => {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                if closes {
                    out.push('"');
                    quoted = None;
                } else if n < MAX_ECHO {
                    out.push(c);
                    quoted = Some(n + 1);
                } else if n == MAX_ECHO {
                    out.push('…');
                    quoted = Some(n + 1);
                }
            }
        }
    }
    out
}

/// A `google.rpc.Status` with one `google.rpc.BadRequest` naming `field`, as status details.
fn bad_request_details(field: &str, description: &str, message: &str) -> bytes::Bytes {
    use crate::rpc::{BadRequest, FieldViolation, RpcStatus};
    use prost::Message as _;
    let violation = BadRequest {
        field_violations: vec![FieldViolation {
            field: bounded(field),
            description: bounded(description),
        }],
    };
    let status = RpcStatus {
        code: tonic::Code::InvalidArgument as i32,
        message: message.to_string(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.BadRequest".into(),
            value: violation.encode_to_vec(),
        }],
    };
    status.encode_to_vec().into()
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { ref field, ref reason } => {
                let message = bounded(&err.to_string());
                let details = bad_request_details(field, reason, &message);
                tonic::Status::with_details(tonic::Code::InvalidArgument, message, details)
            }
            Error::NotFound(_) => tonic::Status::not_found(bounded(&err.to_string())),
            Error::AlreadyExists(_) => tonic::Status::already_exists(bounded(&err.to_string())),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(bounded(&err.to_string())),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(bounded(&err.to_string())),
            Error::Unavailable(_) => tonic::Status::unavailable(bounded(&err.to_string())),
            Error::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_input_is_echoed_at_most_64_characters() {
        let long = "x".repeat(10_000);
        let message = bounded(&format!("sensor: {long:?} is not a sensor id; {long:?} again"));
        assert!(message.len() < 200, "{} bytes: {message}", message.len());
        assert!(
            message.starts_with(&format!("sensor: \"{}…\"", "x".repeat(64))),
            "{message}"
        );
        assert_eq!(
            bounded(r#"value: "warm" is not a number"#),
            r#"value: "warm" is not a number"#
        );
        assert_eq!(bounded(r#"a "q\"uote" b"#), r#"a "q\"uote" b"#);
        let status = tonic::Status::from(Error::invalid("sensor", format!("{long:?} is bad")));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < 100, "{}", status.message());
        assert!(!status.details().is_empty(), "the field travels as a BadRequest detail");
    }
}
