//! A community's issuing account: admins fund it, every grant draws on it,
//! and it never goes below zero.

use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::GrantSource;
use crate::error::DomainError;
use crate::values::{Actor, ContentHash, PersonId, Points, Role, Timestamp};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Funded and not yet granted.
    pub balance: Decimal,
    pub funded: Decimal,
    pub issued: Decimal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BudgetCommand {
    Fund {
        by: Actor,
        amount: Points,
        note: ContentHash,
        at: Timestamp,
    },
    /// The budget's side of a wallet's grant, appended with it.
    Issue {
        resident: PersonId,
        source: GrantSource,
        amount: Decimal,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BudgetEvent {
    BudgetFunded {
        by: Actor,
        amount: Decimal,
        note: ContentHash,
        balance: Decimal,
        at: Timestamp,
    },
    BudgetIssued {
        resident: PersonId,
        source: GrantSource,
        amount: Decimal,
        balance: Decimal,
        at: Timestamp,
    },
}

impl DomainEvent for BudgetEvent {
    fn event_type(&self) -> String {
        match self {
            BudgetEvent::BudgetFunded { .. } => "BudgetFunded",
            BudgetEvent::BudgetIssued { .. } => "BudgetIssued",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

aggregate!(Budget, "Budget", BudgetCommand, BudgetEvent);

impl Budget {
    /// Applies an event; business rules live in `decide`.
    fn fold(&mut self, event: BudgetEvent) {
        match event {
            BudgetEvent::BudgetFunded { amount, .. } => {
                self.balance += amount;
                self.funded += amount;
            }
            BudgetEvent::BudgetIssued { amount, .. } => {
                self.balance -= amount;
                self.issued += amount;
            }
        }
        assert!(
            self.balance >= Decimal::ZERO,
            "the budget is never overdrawn"
        );
        assert_eq!(self.balance, self.funded - self.issued);
    }

    pub(crate) fn decide(&self, command: BudgetCommand) -> Result<BudgetEvent, DomainError> {
        match command {
            BudgetCommand::Fund {
                by,
                amount,
                note,
                at,
            } => {
                if by.role != Role::Admin {
                    return Err(DomainError::Forbidden(
                        "only the community's admin funds its budget".into(),
                    ));
                }
                let amount = amount.amount();
                if self.balance + amount > Points::MAX {
                    return Err(DomainError::validation(
                        "amount",
                        "the budget holds at most a billion points",
                    ));
                }
                Ok(BudgetEvent::BudgetFunded {
                    by,
                    amount,
                    note,
                    balance: self.balance + amount,
                    at,
                })
            }
            BudgetCommand::Issue {
                resident,
                source,
                amount,
                at,
            } => {
                if amount <= Decimal::ZERO {
                    return Err(DomainError::validation("amount", "more than 0"));
                }
                if amount > self.balance {
                    return Err(DomainError::InsufficientBudget(format!(
                        "{} left, {amount} asked",
                        self.balance
                    )));
                }
                Ok(BudgetEvent::BudgetIssued {
                    resident,
                    source,
                    amount,
                    balance: self.balance - amount,
                    at,
                })
            }
        }
    }
}
