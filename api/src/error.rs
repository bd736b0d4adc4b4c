//! Every refusal the API gives, with the stable code clients see in
//! `extensions.code` (docs/DESIGN.md §7).

use async_graphql::ErrorExtensions;
use domain::DomainError;
use projections::ProjectionError;
use store::StoreError;

/// Deliberately not `Display`: async-graphql turns any `Display` error
/// into an error without a code, and every error here has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    /// With `RATE_LIMITED`: when to try again, as
    /// `extensions.retryAfterSeconds` (and HTTP `Retry-After` when the
    /// whole request was refused).
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_seconds: None,
        }
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new("UNAUTHENTICATED", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new("FORBIDDEN", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new("NOT_FOUND", message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        ApiError::new("VALIDATION", message)
    }
    pub fn rate_limited(message: impl Into<String>, retry_after_seconds: u64) -> Self {
        ApiError {
            retry_after_seconds: Some(retry_after_seconds),
            ..ApiError::new("RATE_LIMITED", message)
        }
    }
    /// Code and message, for logs and stall reports.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        // The detail goes to the log, not to the client.
        tracing::error!(%error, "internal error");
        ApiError::new("INTERNAL", "internal error; it was logged")
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        ApiError::new(error.code(), error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error.code() {
            "INTERNAL" | "CORRUPT" => ApiError::internal(error),
            code => ApiError::new(code, error.to_string()),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::Store(error) => error.into(),
            other => match other.code() {
                "INTERNAL" => ApiError::internal(other),
                code => ApiError::new(code, other.to_string()),
            },
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        async_graphql::Error::new(error.message).extend_with(|_, e| {
            e.set("code", error.code);
            if let Some(seconds) = error.retry_after_seconds {
                e.set("retryAfterSeconds", seconds);
            }
        })
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
