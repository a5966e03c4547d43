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

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { .. } => tonic::Status::invalid_argument(err.to_string()),
            Error::NotFound(_) => tonic::Status::not_found(err.to_string()),
            Error::AlreadyExists(_) => tonic::Status::already_exists(err.to_string()),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(err.to_string()),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(err.to_string()),
            Error::Unavailable(_) => tonic::Status::unavailable(err.to_string()),
            Error::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
