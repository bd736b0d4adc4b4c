//! Refusals as GraphQL and HTTP show them: the stable code in
//! `extensions.code` (docs/DESIGN.md §7). The application's [`AppError`]
//! becomes one here; the codes only the adapters give (`STALE`,
//! `QUERY_TOO_COMPLEX`, `PAYLOAD_TOO_LARGE`, `BAD_REQUEST`) start here.

use app::error::AppError;
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
        AppError::unauthenticated(message).into()
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::forbidden(message).into()
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::not_found(message).into()
    }
    /// A malformed argument; `message` names it.
    pub fn validation(message: impl Into<String>) -> Self {
        ApiError::new("VALIDATION", message)
    }
    pub fn internal(error: impl std::fmt::Display) -> Self {
        AppError::internal(error).into()
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        let retry_after_seconds = match &error {
            AppError::RateLimited { retry_after, .. } => retry_after.map(|d| d.as_secs()),
            _ => None,
        };
        ApiError {
            code: error.code(),
            message: error.to_string(),
            retry_after_seconds,
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        AppError::from(error).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        AppError::from(error).into()
    }
}

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        AppError::from(error).into()
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
