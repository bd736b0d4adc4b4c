use serde::{Deserialize, Serialize};

/// Why a command was refused. Each variant has a stable code the API puts in
/// `extensions.code`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    #[error("invalid {field}: {reason}")]
    Validation { field: String, reason: String },
    #[error("cannot {action} while it is {state}")]
    IllegalTransition { action: String, state: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("not enough points: {0}")]
    InsufficientPoints(String),
    #[error("out of stock: {0}")]
    OutOfStock(String),
    #[error("the community's points budget is too small: {0}")]
    InsufficientBudget(String),
}

impl DomainError {
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        DomainError::Validation {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Validation { .. } => "VALIDATION",
            DomainError::IllegalTransition { .. } | DomainError::AlreadyExists(_) => "CONFLICT",
            DomainError::Forbidden(_) => "FORBIDDEN",
            DomainError::NotFound(_) => "NOT_FOUND",
            DomainError::InsufficientPoints(_) => "INSUFFICIENT_POINTS",
            DomainError::OutOfStock(_) => "OUT_OF_STOCK",
            DomainError::InsufficientBudget(_) => "INSUFFICIENT_BUDGET",
        }
    }
}
