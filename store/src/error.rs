use std::sync::Arc;

use crate::types::{CommunityId, ExpectedVersion};

/// Everything the event store can refuse or fail at. The API maps each variant
/// to a stable error code; a concurrency clash is always `Conflict`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "conflict on stream `{stream_id}`: expected {expected}, stream is at version {actual}"
    )]
    Conflict {
        stream_id: String,
        expected: ExpectedVersion,
        actual: i64,
    },
    #[error("idempotency key `{key}` was already used for a different request")]
    IdempotencyKeyReused { key: String },
    #[error("unknown community {0}")]
    UnknownCommunity(CommunityId),
    #[error("community {0} already exists")]
    CommunityExists(CommunityId),
    #[error("invalid input: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("content {0} not found")]
    ContentNotFound(String),
    #[error("the event store is shutting down")]
    ShuttingDown,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {}", describe(.0))]
    Database(Arc<tokio_postgres::Error>),
    #[error("database pool error: {0}")]
    Pool(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("{0}")]
    Provision(String),
    #[error("{0}")]
    SignupRefused(SignupRefusal),
}

/// Why a sign-up code was not issued or not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignupRefusal {
    #[error("this phone was sent too many codes in the last hour")]
    TooManyCodes,
    #[error("no live code for this phone: request a new one")]
    NoLiveCode,
    #[error("the code is wrong")]
    WrongCode,
    #[error("too many wrong attempts: request a new code")]
    TooManyAttempts,
}

impl StoreError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// A short, stable code for this error, shared with the API's `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Conflict { .. } | StoreError::IdempotencyKeyReused { .. } => "CONFLICT",
            StoreError::CommunityExists(_) => "CONFLICT",
            StoreError::UnknownCommunity(_) | StoreError::ContentNotFound(_) => "NOT_FOUND",
            StoreError::Invalid { .. } => "VALIDATION",
            StoreError::SignupRefused(SignupRefusal::NoLiveCode | SignupRefusal::WrongCode) => {
                "VALIDATION"
            }
            StoreError::SignupRefused(_) => "RATE_LIMITED",
            StoreError::ShuttingDown => "UNAVAILABLE",
            StoreError::Corrupt(_) => "CORRUPT",
            StoreError::Database(_)
            | StoreError::Pool(_)
            | StoreError::Migration(_)
            | StoreError::Provision(_) => "INTERNAL",
        }
    }
}

/// What PostgreSQL said, not only "db error".
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Database(Arc::new(error))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(db) => StoreError::from(db),
            other => StoreError::Pool(other.to_string()),
        }
    }
}
