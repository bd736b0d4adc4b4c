//! Every refusal the application gives, as a type: adapters turn a variant
//! into their own form (GraphQL's `extensions.code`, an HTTP status), and
//! retries and background processes match on variants, never on codes
//! (docs/DESIGN.md §7).

use std::time::Duration;

use domain::DomainError;
use projections::ProjectionError;
use store::{SignupRefusal, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// No caller, or a token that is not good.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// An input is malformed or out of bounds; nothing was stored.
    #[error("invalid {field}: {reason}")]
    Validation { field: String, reason: String },
    /// What is stored refuses it: an illegal transition, something that
    /// already exists, an idempotency key reused for another request.
    /// Retrying the same request gives the same answer.
    #[error("{0}")]
    Conflict(String),
    /// Another writer appended to the stream first. Retrying on the new
    /// state may succeed; the command loop does, a bounded number of times.
    #[error("{0}")]
    Contended(String),
    #[error("{0}")]
    InsufficientPoints(String),
    #[error("{0}")]
    InsufficientBudget(String),
    #[error("{0}")]
    OutOfStock(String),
    /// Too many requests from this caller; `retry_after` says when to try
    /// again, when it is known.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// An upload that is not a media type the server takes (judged by
    /// its bytes), or not whole.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// An upload past its bounds: too many bytes, or too many pixels.
    #[error("{0}")]
    TooLarge(String),
    /// What was asked for existed and was erased for good.
    #[error("{0}")]
    Gone(String),
    /// A service the request needs is not there now (shutting down, the
    /// code sender failed).
    #[error("{0}")]
    Unavailable(String),
    /// A defect or the database failing; the detail went to the log.
    #[error("internal error; it was logged")]
    Internal,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// The stable code adapters show (`extensions.code`), shared by
    /// variants a client need not tell apart: a lost race and a refused
    /// transition are both `CONFLICT`.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Validation { .. } => "VALIDATION",
            AppError::Conflict(_) | AppError::Contended(_) => "CONFLICT",
            AppError::InsufficientPoints(_) => "INSUFFICIENT_POINTS",
            AppError::InsufficientBudget(_) => "INSUFFICIENT_BUDGET",
            AppError::OutOfStock(_) => "OUT_OF_STOCK",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::UnsupportedMedia(_) => "UNSUPPORTED_MEDIA",
            AppError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            AppError::Gone(_) => "GONE",
            AppError::Unavailable(_) => "UNAVAILABLE",
            AppError::Internal => "INTERNAL",
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        AppError::Unauthenticated(message.into())
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::NotFound(message.into())
    }
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        AppError::Conflict(message.into())
    }
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        AppError::RateLimited {
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }

    /// Logs the detail; the caller is told only that it was logged.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        AppError::Internal
    }

    /// Code and message, for logs and stall reports.
    pub fn describe(&self) -> String {
        format!("{}: {self}", self.code())
    }
}

impl From<DomainError> for AppError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error {
            DomainError::Validation { field, reason } => AppError::Validation { field, reason },
            DomainError::IllegalTransition { .. } | DomainError::AlreadyExists(_) => {
                AppError::Conflict(message)
            }
            DomainError::Forbidden(_) => AppError::Forbidden(message),
            DomainError::NotFound(_) => AppError::NotFound(message),
            DomainError::InsufficientPoints(_) => AppError::InsufficientPoints(message),
            DomainError::OutOfStock(_) => AppError::OutOfStock(message),
            DomainError::InsufficientBudget(_) => AppError::InsufficientBudget(message),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        let message = error.to_string();
        match error {
            StoreError::Conflict { .. } => AppError::Contended(message),
            StoreError::IdempotencyKeyReused { .. } | StoreError::CommunityExists(_) => {
                AppError::Conflict(message)
            }
            StoreError::UnknownCommunity(_) | StoreError::ContentNotFound(_) => {
                AppError::NotFound(message)
            }
            StoreError::Invalid { field, reason } => AppError::validation(field, reason),
            StoreError::SignupRefused(SignupRefusal::NoLiveCode | SignupRefusal::WrongCode) => {
                AppError::validation("code", message)
            }
            StoreError::SignupRefused(_) => AppError::RateLimited {
                message,
                retry_after: None,
            },
            StoreError::ShuttingDown => AppError::Unavailable(message),
            StoreError::Corrupt(_)
            | StoreError::Database(_)
            | StoreError::Pool(_)
            | StoreError::Migration(_)
            | StoreError::Provision(_) => AppError::internal(error),
        }
    }
}

impl From<ProjectionError> for AppError {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::Store(error) => error.into(),
            ProjectionError::UnknownProjection(_) => AppError::NotFound(error.to_string()),
            ProjectionError::Invalid { field, reason } => AppError::validation(field, reason),
            other => AppError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lost race is retryable, a refused transition is not; clients see
    /// both as `CONFLICT`, the command loop tells them apart.
    #[test]
    fn a_lost_race_and_a_refused_transition_are_different_variants_with_one_code() {
        let race: AppError = StoreError::Conflict {
            stream_id: "report-1".into(),
            expected: store::ExpectedVersion::Exact(1),
            actual: 2,
        }
        .into();
        let refused: AppError = DomainError::IllegalTransition {
            action: "accept".into(),
            state: "closed".into(),
        }
        .into();
        assert!(matches!(race, AppError::Contended(_)));
        assert!(matches!(refused, AppError::Conflict(_)));
        assert_eq!((race.code(), refused.code()), ("CONFLICT", "CONFLICT"));
    }

    #[test]
    fn every_domain_refusal_keeps_its_code() {
        let cases = [
            DomainError::validation("text", "empty"),
            DomainError::Forbidden("no".into()),
            DomainError::NotFound("gift".into()),
            DomainError::AlreadyExists("site".into()),
            DomainError::InsufficientPoints("5".into()),
            DomainError::OutOfStock("gift".into()),
            DomainError::InsufficientBudget("5".into()),
        ];
        for error in cases {
            let code = error.code();
            assert_eq!(AppError::from(error).code(), code);
        }
    }
}
