use std::sync::Arc;

use store::StoreError;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {}", store::error::describe(.0))]
    Database(Arc<tokio_postgres::Error>),
    #[error("database pool error: {0}")]
    Pool(String),
    #[error("unknown projection `{0}`")]
    UnknownProjection(String),
    #[error("event at position {position} cannot be read: {reason}")]
    Undecodable { position: i64, reason: String },
    /// Test hook: the runner was told to fail here, mid-batch.
    #[error("stopped on purpose at position {0}")]
    Interrupted(i64),
    /// A row's value does not fit its column's type (a bug, not bad input).
    #[error("a row for {table} cannot be written: {reason}")]
    Unwritable { table: String, reason: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A process that follows the log (rather than folding it into tables)
    /// could not carry out its command; the batch is retried.
    #[error("{process} failed at position {position}: {reason}")]
    Process {
        process: &'static str,
        position: i64,
        reason: String,
    },
}

impl ProjectionError {
    pub fn code(&self) -> &'static str {
        match self {
            ProjectionError::Store(error) => error.code(),
            ProjectionError::UnknownProjection(_) => "NOT_FOUND",
            ProjectionError::Invalid { .. } => "VALIDATION",
            _ => "INTERNAL",
        }
    }
}

impl From<tokio_postgres::Error> for ProjectionError {
    fn from(error: tokio_postgres::Error) -> Self {
        ProjectionError::Database(Arc::new(error))
    }
}

impl From<deadpool_postgres::PoolError> for ProjectionError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(db) => ProjectionError::from(db),
            other => ProjectionError::Pool(other.to_string()),
        }
    }
}
